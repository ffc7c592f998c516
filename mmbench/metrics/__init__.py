"""Pure metric functions: (predictions, answers) -> numbers."""
