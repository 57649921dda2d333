"""Analysis of finished results: comparisons over seeds (pandas), terminal tables (Rich)
and figures (matplotlib). It reads tables handed to it and never imports the sweep layer."""
