"""Method adapters (one file per method) and the model code they share."""
