"""Small helpers with no knowledge of models or pruning: dtypes, devices, files, progress."""
