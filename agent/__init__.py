"""The assistant: LangGraph agent, LLM client, offline model, loops and the CLI entry points."""
