"""The Starlette shell: app assembly, request reading, routes, edge middleware, control plane, dashboard."""
