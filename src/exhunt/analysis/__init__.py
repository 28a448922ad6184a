"""Host-level analysis of scan results (exposure, chains, verdicts) and the scoping views built from a
``ScanResult``: ``timeline``, ``incidents``, ``mailboxes``, ``indicators`` and ``fleet``."""
