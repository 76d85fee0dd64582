"""One module per department export: each observes the World and writes its files plus truth."""
