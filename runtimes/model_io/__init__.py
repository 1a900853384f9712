"""What an edgelstm model's inputs and outputs mean, written once for every door.

Normalisation, feature order and class names (:mod:`.features`); the stream contract
(:mod:`.contract`); feeding a graph whole, bucketed or chunk by chunk (:mod:`.feeding`);
columnar predictions per task (:mod:`.predictions`); the rows a stream yields
(:mod:`.stream_rows`); stream state (:mod:`.stream_state`) and
:class:`~.streaming_session.StreamingSession`; writers (:mod:`.writers`); and the test-split
metric of an ONNX model (:mod:`.accuracy`).
"""
