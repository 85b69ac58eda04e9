// What the live pages share: following a server-sent event stream that comes back by itself
// after the server restarts (the browser's own retry, the server asks for 1 s, and a new
// EventSource with backoff when the browser gives one up), and rewriting a list (text only).
const MAX_DELAY_MS = 10000;

// Calls onData with each `name` event's parsed data, and onLost when the stream drops.
export function follow(url, name, onData, onLost) {
  let delayMs = 500;
  function connect() {
    const source = new EventSource(url);
    source.addEventListener(name, (ev) => {
      delayMs = 500;
      onData(JSON.parse(ev.data));
    });
    source.onerror = () => {
      onLost();
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, delayMs);
        delayMs = Math.min(2 * delayMs, MAX_DELAY_MS);
      }
    };
  }
  connect();
}

// Replaces the items of list `ul` by one <li> per text.
export function setItems(ul, texts) {
  ul.replaceChildren(...texts.map((t) => {
    const li = document.createElement("li");
    li.textContent = t;
    return li;
  }));
}
