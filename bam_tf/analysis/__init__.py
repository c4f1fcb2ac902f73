"""Analysis of finished runs: statistics across trials and reports."""
