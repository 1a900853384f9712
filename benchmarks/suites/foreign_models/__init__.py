"""Three recurrent models from elsewhere (VAD, CRNN, G2P), taken through edgelstm's commands.

See :mod:`.runner` for what is measured and checked, :mod:`.models` for the models.
"""
