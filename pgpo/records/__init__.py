"""What the stages hand each other: typed records of the files they write (stages) and the one layout of a workflow's
results root (layout). Data flows one way, data -> train -> evaluate -> score -> track -> tables, and every stage
reads and writes these files through this package only."""
