"""diziner.annotate"""
