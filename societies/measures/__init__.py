"""Measures of a society computed from its recorded actions.

``information``: entropy, mutual information, transfer entropy and permutation tests
on discrete action sequences (numbers in bits).
"""
