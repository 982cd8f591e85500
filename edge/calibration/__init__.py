"""Routing that learns its own deployment: the remote tier's answers are the teacher.

agreement.py   would the local answer have done? (the rule that turns a remote answer into a label)
store.py       the labels, bounded, beside the ledger (no text unless log_content)
teacher.py     labels from the request path: a cascade's abandoned local answer vs the remote one
"""
