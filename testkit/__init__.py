"""What the tests and the benchmarks share: a real local HTTP server that speaks the X API's
streaming wire format (``testkit.fake_x_api``), for the one thing we cannot reach from here."""
