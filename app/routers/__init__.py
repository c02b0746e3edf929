"""HTTP routers, one module per group of endpoints; app.main includes them."""
