"""The coordinator's ``openadr:`` configuration section (the VEN itself: ``gridctl.public.openadr``;
this module does not import openleadr, so reading a configuration stays quick)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, model_validator

from gridctl.core import FilePath, StrictModel


class OpenAdrSpec(StrictModel):
    """The coordinator's ``openadr:`` section: which VTN to talk to, as whom, how often.

    ```yaml
    openadr: {vtn_url: "https://vtn.example/OpenADR2/Simple/2.0b", ven_name: oak,
              poll_s: 10, report_s: 60, flex_price_per_kwh: 0.30,
              cert: ven.pem, key: ven.key, ca_file: ca.pem, vtn_fingerprint: "AB:CD:…"}
    ```
    """

    vtn_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=2048)
    ven_name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    ven_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    """The venID agreed with the operator (None: the VTN assigns one at registration)."""
    poll_s: Annotated[float, Field(ge=1, le=3600)] = 10.0
    """How often to poll the VTN, s (also its silence clock: ``SILENT_POLLS`` of these)."""
    report_s: Annotated[int, Field(ge=1, le=3600)] = 60
    """The telemetry report's sampling period offered to the VTN, s."""
    flex_price_per_kwh: Annotated[float, Field(ge=0, le=100)] | None = None
    """Payment per kWh for a limit whose event names no ``BID_PRICE`` (None: unpaid)."""
    cert: FilePath | None = None
    key: FilePath | None = None
    ca_file: FilePath | None = None
    vtn_fingerprint: str | None = Field(default=None, pattern=r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")
    """The VTN certificate's OpenADR fingerprint (the last 10 bytes of its SHA-256)."""

    @model_validator(mode="after")
    def _tls_together(self) -> Self:
        given = [x is not None for x in (self.cert, self.key, self.ca_file)]
        if any(given) and not all(given):
            raise ValueError("cert, key and ca_file go together (TLS with a client certificate)")
        if all(given) and not self.vtn_url.startswith("https://"):
            raise ValueError("with a client certificate the vtn_url must be https://")
        return self

    def relative_to(self, base: Path) -> OpenAdrSpec:
        """The same, with relative file paths taken from ``base`` (a folder)."""
        files = {k: base / getattr(self, k) for k in ("cert", "key", "ca_file")
                 if getattr(self, k) is not None}  # fmt: skip
        return self.model_copy(update=files)
