"""What crosses streams: the job of jobs, the sensors that carry the chain, stream progress and plans."""
