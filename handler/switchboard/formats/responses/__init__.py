"""formats/responses"""
