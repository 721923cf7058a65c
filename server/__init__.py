"""The gRPC edge of Surge: servicers, interceptors, configuration, entry point."""
