"""Benchmarks of jupyter-volume against rclone and boto3 (run ``python -m bench``)."""
