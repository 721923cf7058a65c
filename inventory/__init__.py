"""Items and their stock on hand (units not yet allotted to a campaign)."""
