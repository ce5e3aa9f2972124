"""The REST API and the one server process (`agent-server`), with the chat UI mounted beside it."""
