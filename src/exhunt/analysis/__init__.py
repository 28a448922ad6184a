"""Host-level analysis of scan results, such as the exposure of a host's Exchange build."""
