"""TGI's ``/generate`` protocol: the public client (``client``), the request rules shared with the simulator
(``rules``), the typed answers (``models``), the wire encoding (``wire``) and the runner's ``Backend``
(``backend``). Importing this package imports none of them: the job spec needs only ``rules``."""
