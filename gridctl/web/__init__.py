"""The community web app: public community pages, household statements behind a login and
inclusion proofs to download. It sits at the top of the layering beside ``cli`` and only reads:
ledger files are opened read-only (``file:...?mode=ro``), so a web crash never touches
settlement."""
