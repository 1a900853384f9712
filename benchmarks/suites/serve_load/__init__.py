"""Load harness for ``edgelstm serve``: many streams at a fixed frame rate against the real server.

It starts ``edgelstm serve`` as a subprocess on a free loopback port, drives N streams that each
send K-frame requests at HZ/K requests per second (HTTP/1.1 keep-alive or WebSocket), then
stops the server with SIGTERM and expects exit 0. Per point it reports offered vs achieved
frames/s, end-to-end latency measured by the client, the server's batch sizes (from
``/metrics``), rejected/lost/reordered requests, server RSS and CPU over time, whether the
server serves again afterwards, and rows of a few streams checked against the rows
``edgelstm run --stream`` gives for the same frames. ``--baseline`` runs each point again
against ``--max-batch 1`` (one model call per request), so the batcher's gain is a ratio
measured side by side; a list in ``--streams`` (or ``--sweep``) finds the saturation point.

One module per job:

- :mod:`.plan`: the load (streams, rate, frames per request) and the messages it sends;
- :mod:`.clients`: the lean HTTP/1.1 and WebSocket clients and each stream's schedule;
- :mod:`.server`: the ``edgelstm serve`` subprocess, started, asked and stopped;
- :mod:`.sampling`: what is read off the server (/proc memory and CPU, ``/metrics``);
- :mod:`.expected`: the rows ``run --stream`` gives; :mod:`.rows_check` compares them;
- :mod:`.report`: a point's record, the saturation rule, JSON and Markdown;
- :mod:`.runner`: the command line (``python -m edgelstm.benchmarks.suites.serve_load``).

Results land in ``benchmark-results/`` unless told ``--out``; the committed ones are
updated from the repository root with ``--out benchmarks/results``::

    python -m edgelstm.benchmarks.suites.serve_load --model reference --streams 100,500 \\
        --baseline --out benchmarks/results
"""
