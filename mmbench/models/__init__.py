"""Reference models (MyGO, Graph4MM, VW-LMM) and shared model building blocks."""
