"""The graph's nodes, one module each with the routers that follow it; ``policy/`` holds the pure logic they
share. A node never imports another node."""
