"""What a plan becomes for people and machines: reports, plots, the deployment export."""
