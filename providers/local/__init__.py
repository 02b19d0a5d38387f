"""The ``local`` tier: a GGUF model run in process by llama.cpp, or any OpenAI-compatible local server.

Two thin LangChain chat models live here, both ours rather than ``langchain_community``'s
``ChatLlamaCpp`` / ``ChatOpenAI``: ``langchain-community`` is being sunset upstream (it warns on import),
and owning these few hundred lines lets us format prompts for the model that is actually loaded, read
log-probabilities cheaply, cancel a generation at its deadline, and keep one llama.cpp context per model
file and process.

Modules: ``templates`` (chat formats, stop strings, sampling defaults), ``model_file`` (the embedded default
and file checks), ``llamacpp`` (the in-process model), ``openai_compat`` (a local server), ``adapter``.
"""
