"""`fastmsg bench`: fastmsg and its peers (pyzmq, plain sockets) measured the same way.

runner.py   starts two worker processes per pinning, runs every case, checks the results
worker.py   a worker process: pins itself, then runs the cases it is sent (JSON lines on stdin)
payload.py  sizes, the message pool, checksums and the fault hook tests use
peer_*.py   one module per peer: the receiving and sending side of each measurement
table.py    the table printed at the end
"""
