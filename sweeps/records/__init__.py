"""The sweep folder's records: its state file and names, the Parquet tables, the MLflow client and view."""
