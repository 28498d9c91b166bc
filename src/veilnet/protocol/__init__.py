"""Wire protocol: Epistula-signed requests and the OpenAI-compatible schemas."""
