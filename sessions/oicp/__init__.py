"""OICP 2.3 for the EMP side: identifiers, status codes, the HBS client and a simulator.

Nothing in this package touches the ORM, so it can be tested with `responses` alone and the
simulator can run as a standalone process.
"""
