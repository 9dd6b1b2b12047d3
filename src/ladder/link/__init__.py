"""Link: TLS, the web-site face, member authentication, driving the mux over a real connection."""
