"""The source connectors: one interface (``base.Source``), one module per source type."""
