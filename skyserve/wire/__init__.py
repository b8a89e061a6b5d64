"""DNS messages on the wire, with no sockets: one module per concept.

``constants`` (numbers and their names), ``rr`` (records before they are rendered),
``query`` (parsing a client's query), ``render`` (replies from our data) and ``response``
(upstream replies: parsed once, relayed to clients).
"""
