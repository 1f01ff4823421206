"""The SMS API worker: a process of its own that makes Twilio's API calls (creates and lookups)
for the gateway (sms/twilio_process.py), off the gateway's core. Only this process runs the code of
this folder; the webhooks stay in the gateway."""
