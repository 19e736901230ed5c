"""Games turn state into prompts and option lists, and actions into payoffs.

They know nothing of models (DESIGN.md): a game never sees logits or adapters.
"""
