"""ops/cli"""
