"""The Ray callback that keeps the books as trials report: MLflow runs, result rows, the front."""
