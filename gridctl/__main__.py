from gridctl.cli import app

app(prog_name="gridctl")
