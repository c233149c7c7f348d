//! Sans-IO call engine: turn taking, chunking, barge-in, fillers, timeouts, tools; time is an input.
