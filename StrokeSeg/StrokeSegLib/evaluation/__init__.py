"""ISLES metrics, lesion detection, evaluation reports and plots. May import the stages below."""
