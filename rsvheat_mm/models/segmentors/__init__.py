# Toolbox-specific: modules here are listed in rsvheat_mm/utils/plugins.py, not imported here.
