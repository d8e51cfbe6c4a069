"""Admin views shared by the CLI (and later the HTTP admin API): jobs, images, objects."""
