"""Publishing runs: site-data.json and its JSON Schema, site templates, the site-gen sandbox."""
