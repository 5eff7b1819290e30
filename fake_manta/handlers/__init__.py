"""HTTP <-> Store (moto ``responses.py`` role): parse the request, call the Store, serialise."""
