"""The Microsoft identity platform (v2.0 endpoints) over the kernel's `Core`: discovery, authorize, token."""
