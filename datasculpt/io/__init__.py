"""Reading corpora and writing run artifacts."""
