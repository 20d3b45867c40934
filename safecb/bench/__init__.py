"""`python -m safecb bench {model,safety,vapi,speed}`: the library's top floor. Each bench prints
its figures with n and 95% intervals and can write them as JSON; nothing in the library imports a
bench."""
