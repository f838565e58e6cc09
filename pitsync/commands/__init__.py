"""What each command of the command line does, a module for each kind of command.

`pitsync.cli` reads the command line and imports the one module the command needs, so
`pitsync query` starts without loading the sync job, and `pitsync sync` without Spark.
"""
