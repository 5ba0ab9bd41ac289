"""The parent job that runs the streams for one substrate version N, and the sensors around it."""
