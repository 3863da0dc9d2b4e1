"""Official warnings received as CAP: parsing, area mapping, the record of what was received."""
