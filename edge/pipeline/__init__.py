"""The request path's stages, in the order a request meets them (edge.engine runs them):

    admission.py   serving gate, validation: Draft -> Request
    planning.py    PII guard, cache lookup, decide, cost gate, signals, weigh -> Plan
    candidates.py  who may answer: remote backends' state, the chain's candidates, probes
    chain.py       run the chain: breakers, retries, mid-stream continuation
    cascade.py     the cascade gate's verdict on the local answer
    results.py     timings, trace, degraded -> Result
    recording.py   ledger, metrics, one log line

A request whose strategy is plan takes a detour through three more:

    plan_format.py   the plan's JSON format, parsed strictly; the compound rule
    plan_call.py     the planner call: the last user message through the PII guard to a remote tier
    plan_execute.py  each step a request of its own (through the stages above), the answers joined
"""
